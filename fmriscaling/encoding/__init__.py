"""Voxelwise encoding models: design matrices, ridge regression, scoring."""
