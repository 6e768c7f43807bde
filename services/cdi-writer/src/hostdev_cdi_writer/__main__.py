"""Entry point: python -m hostdev_cdi_writer."""

from hostdev_cdi_writer.app import SERVICE, app
from hostdev_cdi_writer.settings import Settings
from hostdev_runtime.main import main

if __name__ == "__main__":
    main(SERVICE, Settings, app)
