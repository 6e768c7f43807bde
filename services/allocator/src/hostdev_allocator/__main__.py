"""Entry point: python -m hostdev_allocator."""

from hostdev_allocator.app import SERVICE, app
from hostdev_allocator.settings import Settings
from hostdev_runtime.main import main

if __name__ == "__main__":
    main(SERVICE, Settings, app)
