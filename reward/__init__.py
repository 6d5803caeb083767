"""rl-fyp reward: components and shaping, pure functions of the simulator's feedback record.

Modules: ``feedback`` (the record the simulator emits), ``terms`` (term names),
``config`` (:class:`RewardConfig`, presets), ``engagement`` / ``session`` / ``retention`` /
``slate`` (pure term functions per group), ``shaping`` (potential-based shaping, the only
memory), ``composite`` (:func:`build_reward`), ``metrics`` (the evaluation objective, which
is never the reward) and ``typed_config`` (the config machinery). Nothing here imports
``ray`` or ``envs``.
"""
