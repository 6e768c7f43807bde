"""Entry point: python -m hostdev_preparer."""

from hostdev_preparer.app import SERVICE, app
from hostdev_preparer.settings import Settings
from hostdev_runtime.main import main

if __name__ == "__main__":
    main(SERVICE, Settings, app)
