ALTER TABLE enrollment_tokens DROP COLUMN hostname;
