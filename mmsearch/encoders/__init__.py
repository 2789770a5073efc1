"""Models that embed images and texts into one space: the Encoder protocol, the registry of
models, the open_clip encoder and its text-tower variants, and the pretrained-towers encoder."""
