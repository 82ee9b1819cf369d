-- Disk quotas per user (used by the quotas feature); NULL: no quota.
ALTER TABLE ftp_users
  ADD COLUMN quota_bytes bigint,
  ADD COLUMN quota_files integer;
