"""Test factories, one module per Bastion package."""
