"""Tools for trying and testing the service locally: the demo, a local server, the GCS
emulator, generated sample media (entry points, like service/commands/)."""
