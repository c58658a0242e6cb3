"""The web push demo page's files (``offload_api.views.push_demo`` serves them)."""
