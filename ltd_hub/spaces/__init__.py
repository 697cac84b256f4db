"""Building and publishing the comparison Space (the app itself ships as :mod:`ltd_hub.space`)."""
