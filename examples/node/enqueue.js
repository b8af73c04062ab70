#!/usr/bin/env node
// A Node.js producer for outbox-worker: the application's own INSERT and the outbox row commit
// together or not at all, because both run in one transaction on one connection.
//
//   npm install
//   OUTBOX_DATABASE_URL=postgresql://app@db/app node enqueue.js '<update JSON>' [dedup-key] [--dry-run]
//
// The update is Ravelin's registration update in its wire format (camelCase JSON). outbox.enqueue
// validates it (SQLSTATE 22023 naming every bad field; nothing is stored then), stores it, and
// returns the message id; the same dedup key again returns the first message's id. --dry-run
// does everything and rolls back, so nothing is stored. Exit codes: 0 stored (or rolled back),
// 1 the database refused (a payload that is not JSON too: SQLSTATE 22P02), 2 bad usage.
"use strict";

const { Client } = require("pg");

// The application's own table, standing in for your users table.
const CREATE_USERS = `CREATE TABLE IF NOT EXISTS example_users (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  username text,
  created_at timestamptz NOT NULL DEFAULT now()
)`;
// The payload's text is read by PostgreSQL alone: no JSON parsing here, so an error message can
// never echo a piece of it (personal data) back to the terminal.
const INSERT_USER = `INSERT INTO example_users (username)
  VALUES ($1::jsonb #>> '{registration,username}') RETURNING id`;
// Always parameters, never string building: the payload is someone's input.
const ENQUEUE = "SELECT outbox.enqueue($1::jsonb, $2) AS message_id";

function usage(problem) {
  console.error(`${problem}\nusage: OUTBOX_DATABASE_URL=postgresql://... node enqueue.js '<update JSON>' [dedup-key] [--dry-run]`);
  process.exit(2);
}

function parseArgs(argv) {
  const dryRun = argv.includes("--dry-run");
  const [payload, dedupKey] = argv.filter((arg) => arg !== "--dry-run");
  if (payload === undefined) usage("missing the update JSON");
  return { payload, dedupKey: dedupKey ?? null, dryRun };
}

async function registerAndEnqueue(client, { payload, dedupKey, dryRun }) {
  await client.query(CREATE_USERS);
  await client.query("BEGIN");
  try {
    const user = await client.query(INSERT_USER, [payload]);
    // The payload goes as the text the caller gave: PostgreSQL parses it as jsonb.
    const message = await client.query(ENQUEUE, [payload, dedupKey]);
    await client.query(dryRun ? "ROLLBACK" : "COMMIT");
    return { userId: user.rows[0].id, messageId: message.rows[0].message_id };
  } catch (error) {
    // The first error is the one to report; a failed ROLLBACK (connection gone) adds nothing.
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
}

async function main() {
  const url = process.env.OUTBOX_DATABASE_URL;
  if (!url) usage("OUTBOX_DATABASE_URL is not set; set it to your database's postgresql:// URL");
  const args = parseArgs(process.argv.slice(2));
  const client = new Client({ connectionString: url });
  try {
    await client.connect();
    const { userId, messageId } = await registerAndEnqueue(client, args);
    const verb = args.dryRun ? "rolled back (dry run)" : "committed";
    console.log(`${verb}: user ${userId}, outbox message ${messageId}`);
  } catch (error) {
    // The database's message names every bad field (paths only, never the values).
    const code = error.code ? ` (SQLSTATE ${error.code})` : "";
    console.error(`enqueue failed${code}: ${error.message}`);
    process.exitCode = 1;
  } finally {
    await client.end().catch(() => {});
  }
}

main();
