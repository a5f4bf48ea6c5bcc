"""Training scripts launched by ``realign-trl`` (through ``accelerate launch``)."""
