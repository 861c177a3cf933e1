-- Wrong answers to a sign-in challenge, counted atomically (UPDATE ... SET attempts = attempts + 1
-- WHERE attempts < limit) before an answer is checked, so parallel guesses cannot share one count.
ALTER TABLE auth_challenges ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
