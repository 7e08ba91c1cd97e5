"""The package version, in its own module so that modules reading it do not import the package."""

__version__ = "0.1.0"
