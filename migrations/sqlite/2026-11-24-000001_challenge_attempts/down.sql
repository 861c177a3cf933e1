ALTER TABLE auth_challenges DROP COLUMN attempts;
