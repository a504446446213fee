"""Built-in calculators; importing the package registers them."""
from bench.calculators import forced, generation, icm, prompted, semantic  # noqa: F401
