// The scanner's outbox: scans (and answers) made without a connection, kept in IndexedDB
// in the order they happened, each with the nonce or Idempotency-Key it will be sent with.
// Entries belong to the person who made them; only that person's session uploads them.

const DB_NAME = "coi-scanner";
const STORE = "outbox";

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      request.result.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function withStore(mode, work) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const result = work(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(result.result === undefined ? result : result.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

export function add(entry) {
  return withStore("readwrite", (store) => store.add({ ...entry, queuedAt: new Date().toISOString() }));
}

export function remove(id) {
  return withStore("readwrite", (store) => store.delete(id));
}

export async function list() {
  const all = await withStore("readonly", (store) => store.getAll());
  return (all || []).sort((a, b) => a.id - b.id);
}

export async function count(user) {
  return (await list()).filter((entry) => entry.user === user).length;
}
