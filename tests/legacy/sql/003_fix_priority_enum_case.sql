-- What ashfaq1192/hackathon-todo-fullstack's hand-run script
-- phase-2-fullstack/backend/migrations/003_fix_priority_enum_case.py does, step by step
-- (it commits after each): priority through varchar(10), upper-case values folded, the
-- enum type taskpriority dropped (CASCADE) and made again in lower case, the column
-- converted to it, and the default put back.
ALTER TABLE tasks ALTER COLUMN priority TYPE varchar(10);
UPDATE tasks SET priority = lower(priority) WHERE priority IN ('LOW', 'MEDIUM', 'HIGH');
DROP TYPE IF EXISTS taskpriority CASCADE;
CREATE TYPE taskpriority AS ENUM ('low', 'medium', 'high');
ALTER TABLE tasks ALTER COLUMN priority DROP DEFAULT;
ALTER TABLE tasks ALTER COLUMN priority TYPE taskpriority USING priority::taskpriority;
ALTER TABLE tasks ALTER COLUMN priority SET DEFAULT 'medium'::taskpriority;
