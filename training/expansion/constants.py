"""The domain-expansion method's named defaults, written once (paper Sec. 3 and the official code).

Every default of the method's command lines, losses and tools refers to these names.
"""

SUBSPACE_DISTANCE = 20.0    # s: distance of a repurposed subspace from the base one along its direction (Eq. 2).

# Weights of the terms of the total objective (Eq. 7).
LAMBDA_EXPAND = 1.0         # Sum of the task losses on the repurposed subspaces (Eq. 4).
LAMBDA_SRC = 1.0            # Source GAN loss on the base subspace (Eq. 5): adversarial + R1 + path length.
LAMBDA_RECON_L2 = 10.0      # Replay alignment to the frozen source, L2 part (Eq. 6).
LAMBDA_RECON_LPIPS = 10.0   # Replay alignment to the frozen source, LPIPS part (Eq. 6).
