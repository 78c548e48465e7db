"""One module per app tab (plus shared pieces); see demos/common.py."""
