ALTER TABLE enrollment_tokens DROP COLUMN addresses_json;
DROP TABLE crl_deliveries;
DROP TABLE crls;
