-- Neighbours: tables of other tools in the same schema, as the app has them (its auth
-- library keeps user, session, account and verification beside tasks: upstream's
-- phase-2-fullstack/backend/migrations/002_create_better_auth_tables.py; its chatbot keeps
-- conversations and messages, 007_chatbot_mcp.py). Written here in short: adoption must
-- leave every one of them, and their rows, exactly as they are.
CREATE TABLE "user" (
    id text PRIMARY KEY,
    email text UNIQUE NOT NULL,
    "emailVerified" boolean NOT NULL DEFAULT false,
    "createdAt" timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE session (
    id text PRIMARY KEY,
    token text UNIQUE NOT NULL,
    "expiresAt" timestamp NOT NULL,
    "userId" text NOT NULL REFERENCES "user" (id) ON DELETE CASCADE
);
CREATE TABLE account (
    id text PRIMARY KEY,
    "providerId" text NOT NULL,
    "userId" text NOT NULL REFERENCES "user" (id) ON DELETE CASCADE
);
CREATE TABLE verification (id text PRIMARY KEY, identifier text NOT NULL, value text NOT NULL);
CREATE TYPE message_role AS ENUM ('user', 'assistant');
CREATE TABLE conversations (
    id serial PRIMARY KEY,
    user_id varchar NOT NULL,
    title varchar(255),
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE messages (
    id serial PRIMARY KEY,
    conversation_id integer NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role message_role NOT NULL,
    content text NOT NULL
);
INSERT INTO "user" (id, email, "createdAt") VALUES
    ('u-alice', 'alice@example.com', '2025-12-20 10:30:00'),
    ('u-bob', 'bob@example.com', '2025-12-21 08:00:00');
INSERT INTO session VALUES ('s1', 'tok-1', '2026-01-20 10:30:00', 'u-alice');
INSERT INTO account VALUES ('a1', 'credential', 'u-alice');
INSERT INTO verification VALUES ('v1', 'bob@example.com', '918273');
INSERT INTO conversations (user_id, title) VALUES ('u-alice', 'کام کی فہرست');
INSERT INTO messages (conversation_id, role, content) VALUES (1, 'user', 'add milk');
