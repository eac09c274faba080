"""Cryo-SWAN encoder: the multi-scale wavelet autoencoder (built in a later step)."""
