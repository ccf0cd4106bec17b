// Projects as the pages read them: the list the caller may see, and one project by its id (a
// run's page names its project with it).
import { api, enc } from './api.js';

// Every project the caller may see (a submitter: those listing it as a member), oldest first.
export async function listProjects(maxPages = 20) {
  const all = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const page = await api('/v1/projects?limit=1000' + (cursor ? '&cursor=' + enc(cursor) : ''));
    all.push(...page.projects);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return all;
}

// The project with this id, or null when the caller may not see it (or it was deleted).
export function projectById(id) {
  return api('/v1/projects/' + enc(id)).catch((e) => {
    if (e.status === 404) return null;
    throw e;
  });
}

// How a project's runs reach its directory, in words.
export const modeText = (mode) => (mode === 'cow' ? 'copy-on-write' : 'read-only');
