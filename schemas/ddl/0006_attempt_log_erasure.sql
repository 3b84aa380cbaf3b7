-- Erasure also deletes the erased recipient's webhook attempts (api/erasure_residue.py: ALTER TABLE ... DELETE
-- by message id): the parts that mutation replaces leave the disk as soon as those of the other erased tables
-- (0005_suppression_tags.sql), within the erasure answer's on_disk_by, not after the server's default 480 s.
ALTER TABLE {db}.webhook_deliveries MODIFY SETTING old_parts_lifetime = 60, cleanup_delay_period = 10, max_cleanup_delay_period = 30;
