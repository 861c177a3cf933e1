-- A token made for a named host (Hosts page, "Add a host") binds the name it must enroll under.
ALTER TABLE enrollment_tokens ADD COLUMN hostname TEXT;
