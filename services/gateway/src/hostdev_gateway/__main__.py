"""Entry point: python -m hostdev_gateway."""

from hostdev_gateway.app import SERVICE, app
from hostdev_gateway.settings import Settings
from hostdev_runtime.main import main

if __name__ == "__main__":
    main(SERVICE, Settings, app)
