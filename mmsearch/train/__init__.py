"""Training and evaluating models: the open_clip loop, LiT heads on pretrained towers, captioned
collections and retrieval scores."""
