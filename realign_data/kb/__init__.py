"""The knowledge base: image corpora (COCO, folders, datasets), COCO split hygiene, the CLIP encoder, vector shards, index choice and tuning, building and checking a knowledge base."""
