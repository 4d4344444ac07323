"""photoremix: restyle a photo to match a reference image, keeping the people recognisable."""

__version__ = "0.1.0"
