"""pixelpipe: the command line and the wiring that puts the stages together in one process or as roles."""
