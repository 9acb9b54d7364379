"""The control-plane REST API: thin FastAPI adapters over the service layer."""
