"""An example shop built on Offload's public SDK: a checkout that answers 202 and a pipeline of jobs.

- :mod:`offload_orders.app`: the Flask shop (``POST /checkout``, ``GET /orders/status/<job>``, SSE).
- :mod:`offload_orders.worker`: the job types ``order.create``, ``inventory.reserve`` and
  ``payment.charge`` (``dramatiq offload_orders.worker:setup``).
- :mod:`offload_orders.store`: the shop's own data (prices, stock, reservations) in its own Redis.
- :mod:`offload_orders.gateway` and :mod:`offload_orders.breaker`: the payment gateway's client and
  the circuit breaker around it; :mod:`offload_orders.fake_gateway`: a gateway for demos and tests.
"""
