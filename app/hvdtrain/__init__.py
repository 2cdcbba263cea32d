"""hvdtrain: shortest time-to-train for image classifiers on Xeon CPU clusters."""

__version__ = "0.1.0"
