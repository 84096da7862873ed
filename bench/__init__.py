"""Side-by-side echo benchmark: aiocomm against other asyncio RPC stacks.

Run ``python -m bench --help`` from the repository root.
"""
