// Projects, and plans made from an intent.
//
// A project is a host directory under the daemon's workspace roots (or a repository) with the
// defaults its runs inherit and the API keys that may use it. Admins create, change and delete
// projects; a submitter sees those naming it in `members`; reviewers and admins see them all. The
// daemon's planner turns an intent ("run the tests and give me a report", "运行测试并生成报告")
// into a plan of steps with the project's own tooling, each with the command policy's decision;
// a plan is immutable (`sha256`), and a run of it goes through review like any other run.

import type { Transport } from './transport.js';
import type { Plan, Project, ProjectInput, ProjectList, Run } from './types.js';
import { seg } from './util.js';

/** A new project: a name, and a directory or a repository. */
export interface ProjectCreate extends ProjectInput {
  name: string;
}

export interface ProjectListOptions {
  limit?: number;
  cursor?: string;
}

/** The fields to replace, and optionally the version they were decided against. */
export interface ProjectUpdate extends ProjectInput {
  /** Only while the project is still at this version (FailedPreconditionError otherwise). */
  version?: number;
}

export class Projects {
  #t: Transport;

  /** @internal */
  constructor(t: Transport) {
    this.#t = t;
  }

  /** Creates a project (an admin's key). AlreadyExistsError for a name taken,
   * InvalidArgumentError for a bad field or an unknown member, PermissionDeniedError for
   * another role or a directory outside the workspace roots. */
  create(input: ProjectCreate): Promise<Project> {
    const body: Record<string, unknown> = { ...input };
    return this.#t.json<Project>('POST', 'v1/projects', { body });
  }

  /** A project by id or name; NotFoundError also for one this key may not see. */
  get(project: string): Promise<Project> {
    return this.#t.json<Project>('GET', `v1/projects/${seg(project)}`);
  }

  /** One page of the projects this key may see, oldest first. */
  list(opts: ProjectListOptions = {}): Promise<ProjectList> {
    return this.#t.json<ProjectList>('GET', 'v1/projects', { query: { limit: opts.limit, cursor: opts.cursor } });
  }

  /** Every project this key may see, page after page. */
  async *iterate(opts: Omit<ProjectListOptions, 'cursor'> = {}): AsyncGenerator<Project> {
    let cursor: string | undefined;
    do {
      const page = await this.list({ ...opts, ...(cursor ? { cursor } : {}) });
      yield* page.projects;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  /** Replaces the fields given (an admin's key); with `version`, only while the project is
   * still at that version: FailedPreconditionError (409) when it moved on. Answers the project,
   * one version on. */
  update(project: string, changes: ProjectUpdate): Promise<Project> {
    return this.#t.json<Project>('PATCH', `v1/projects/${seg(project)}`, { body: changes as Record<string, unknown> });
  }

  /** Deletes a project and its plans (an admin's key); its runs stay, with its id. */
  delete(project: string): Promise<{ deleted: string }> {
    return this.#t.json<{ deleted: string }>('DELETE', `v1/projects/${seg(project)}`);
  }

  /** The daemon's planner reads the project's directory and plans the intent (English or
   * Chinese); nothing runs yet. NotFoundError when it plans nothing for it ("no plan for this
   * intent": another action such as deploy or delete, or tooling the project lacks; the message
   * says what it looked for); InvalidArgumentError for an empty or oversized intent. */
  plan(project: string, intentText: string): Promise<Plan> {
    return this.#t.json<Plan>('POST', `v1/projects/${seg(project)}/plans`, { body: { intent_text: intentText } });
  }

  /** A plan; NotFoundError for one of a project this key may not see. */
  getPlan(id: string): Promise<Plan> {
    return this.#t.json<Plan>('GET', `v1/plans/${seg(id)}`);
  }

  /** The project's plans, newest first. */
  async listPlans(project: string, opts: { limit?: number } = {}): Promise<Plan[]> {
    return (await this.#t.json<{ plans: Plan[] }>('GET', `v1/projects/${seg(project)}/plans`, { query: { limit: opts.limit } })).plans;
  }

  /** A run of the plan exactly as it is (its steps, limits, workspace and labels, plus the
   * labels `plan` and `plan_sha256`), which goes to the review gate like any run. The same
   * `idempotencyKey` answers the same run. */
  runPlan(project: string, planId: string, opts: { idempotencyKey?: string } = {}): Promise<Run> {
    return this.#t.json<Run>('POST', `v1/projects/${seg(project)}/runs`, {
      body: { plan_id: planId },
      ...(opts.idempotencyKey ? { headers: { 'Idempotency-Key': opts.idempotencyKey } } : {}),
    });
  }
}
