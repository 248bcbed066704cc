"""Data stage: safe loading, validation and conversion of MMSA pickles, synthetic data, the HDF5 reader and
the saved availability masks."""
