"""``python -m offload_orders stock SKU PRICE_CENTS QUANTITY``: put a product on sale in the shop's store.

``python -m offload_orders show SKU`` prints its price and what is left. Both read the shop's
settings from the environment (``OFFLOAD_ORDERS_REDIS_URL``, ``OFFLOAD_ORDERS_PREFIX``).
"""

from __future__ import annotations

import argparse

from offload_orders.settings import ShopSettings
from offload_orders.store import ShopStore


def main() -> None:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(prog="python -m offload_orders", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    stock = commands.add_parser("stock", help="put a product on sale (or change its price and stock)")
    stock.add_argument("sku")
    stock.add_argument("price_cents", type=int)
    stock.add_argument("quantity", type=int)
    show = commands.add_parser("show", help="a product's price and stock")
    show.add_argument("sku")
    args = parser.parse_args()
    settings = ShopSettings()
    store = ShopStore.from_url(settings.orders_redis_url.get_secret_value(), settings.orders_prefix)
    try:
        if args.command == "stock":
            if args.price_cents < 0 or args.quantity < 0:
                parser.error("price and quantity must not be negative")
            store.stock_item(args.sku, price_cents=args.price_cents, stock=args.quantity)
        price = store.prices([args.sku])[args.sku]
        if price is None:
            parser.exit(1, f"The shop does not sell {args.sku!r}.\n")
        print(f"{args.sku}: {price / 100:.2f}, {store.stock(args.sku)} in stock")
    finally:
        store.close()


if __name__ == "__main__":
    main()
