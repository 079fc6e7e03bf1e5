"""The LAW method, free of I/O and of Horovod: features, strategy model, DDPG with FDU, reward.

Collectives arrive as arguments (an `average_gradients` callable), so everything here runs and is
tested in one process.
"""
