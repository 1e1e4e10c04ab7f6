"""Provider batch APIs (``use_batch_api=True``): the journal, the provider-neutral collector
and poller (:mod:`.base`), and one adapter per provider (imported lazily: each needs its SDK).
"""
