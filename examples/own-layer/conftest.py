"""The only set-up this project needs to test its layer on every array library."""

pytest_plugins = ["xaffine.testing.plugin"]
