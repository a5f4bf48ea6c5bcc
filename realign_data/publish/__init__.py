"""Publishing a built dataset: provenance, the dataset card, the inspect page, the Hub push (and the local Hub server), exports to other trainers' formats."""
