"""Every NATS subject builder and message Struct of dra-driver-hostdev; imports msgspec only."""
