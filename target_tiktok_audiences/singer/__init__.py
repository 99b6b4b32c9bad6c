"""The Singer seam: everything that knows the Meltano Singer SDK's Target, reader and sink.

target.py (TargetTikTokAudiences: settings, CLI, messages, end of input, STATE, signals),
fastpath.py (the lean record path, its RecordPlan and block lanes, and the SDK privates it uses),
reader.py (the message reader), sink.py (AudienceSink: a record to its binding's digests),
record_age.py (the SDK's max record age, by time).
"""
