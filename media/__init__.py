"""Audio plumbing with no AI in it: resampling, the inbound reader, Silero VAD, the turn
segmenter, and the paced outbound track. Nothing here knows about the session protocol."""
