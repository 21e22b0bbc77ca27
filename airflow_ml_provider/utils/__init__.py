"""Small pure helpers with no heavy imports."""
