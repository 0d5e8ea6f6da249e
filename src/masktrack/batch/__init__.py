"""Whole-dataset batch runs over local workers or a Ray cluster."""
