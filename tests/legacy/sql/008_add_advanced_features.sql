-- What ashfaq1192/hackathon-todo-fullstack's hand-run script
-- phase-3-chatbot/backend/migrations/008_add_advanced_features.py does (one transaction):
-- the Phase III columns (naive timestamps, recurring as a varchar, tags as text[]) and
-- five indexes named idx_tasks_*.
ALTER TABLE tasks ADD COLUMN due_date timestamp;
ALTER TABLE tasks ADD COLUMN recurring varchar(10) NOT NULL DEFAULT 'none';
ALTER TABLE tasks ADD COLUMN recurring_end_date timestamp;
ALTER TABLE tasks ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
CREATE INDEX idx_tasks_due_date ON tasks (due_date);
CREATE INDEX idx_tasks_recurring ON tasks (recurring);
CREATE INDEX idx_tasks_tags ON tasks USING gin (tags);
CREATE INDEX idx_tasks_priority ON tasks (priority);
CREATE INDEX idx_tasks_complete ON tasks (complete);
