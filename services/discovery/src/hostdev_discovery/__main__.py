"""Entry point: python -m hostdev_discovery."""

from hostdev_discovery.app import SERVICE, app
from hostdev_discovery.settings import Settings
from hostdev_runtime.main import main

if __name__ == "__main__":
    main(SERVICE, Settings, app)
