/**
 * Assignment: only the users and groups listed may use the app. Unassigned
 * users get 403 Forbidden, as in Entra. A group list the provider cut short
 * (overage) never satisfies a group rule.
 */
import { PLUGIN_API_VERSION, type Decision, type Identity, type Plugin, type RequestContext, type Stage } from '../../pipeline/stage.js';

export interface AssignmentOptions {
  users?: readonly string[];
  groups?: readonly string[];
}

export const assignment: Plugin<AssignmentOptions> = {
  name: 'assignment',
  kind: 'access',
  apiVersion: PLUGIN_API_VERSION,
  description: 'Users and groups assigned to the app.',
  optionsSchema: {
    type: 'object',
    additionalProperties: false,
    properties: { users: { type: 'array', items: { type: 'string' } }, groups: { type: 'array', items: { type: 'string' } } },
  },
  create: (options) => {
    const assigned = assignedTo(options);
    if (!assigned.users.size && !assigned.groups.size) throw new Error('assignment lists no users and no groups: nobody could use the app');
    return new AssignmentStage(assigned);
  },
};

/** An assignment as it is checked, lower-cased. */
export interface Assigned {
  readonly users: ReadonlySet<string>;
  readonly groups: ReadonlySet<string>;
}

export function assignedTo(options: AssignmentOptions): Assigned {
  // Without case, as policy group conditions and the session's trimmed group list are.
  return { users: new Set((options.users ?? []).map((u) => u.toLowerCase())), groups: new Set((options.groups ?? []).map((g) => g.toLowerCase())) };
}

/**
 * Why the assignment admits this identity (a reason for the log), or undefined when it does not.
 * The stage and the app portal's list (which shows a user only the apps this admits) both ask here.
 */
export function admits(a: Assigned, id: Identity): string | undefined {
  if (a.users.has(id.user.toLowerCase())) return `assigned user ${id.user}`;
  // A trimmed session list still holds every group the config names, so it is trusted; an overage list is not.
  if (!id.groupsIncomplete) for (const g of id.groups) if (a.groups.has(g.toLowerCase())) return `assigned group ${g}`;
  return undefined;
}

class AssignmentStage implements Stage {
  readonly name = 'assignment';
  readonly kind = 'access' as const;
  constructor(private readonly assigned: Assigned) {}

  run(ctx: RequestContext): Decision {
    const id = ctx.identity;
    // Fail closed: assignment without a signed-in user is a misbuilt pipeline.
    if (!id) return { kind: 'deny', status: 401, reasons: ['assignment: no identity'] };
    const reason = admits(this.assigned, id);
    if (reason) return { kind: 'continue', reasons: [reason] };
    return {
      kind: 'deny',
      status: 403,
      reasons: [`user ${id.user} is not assigned to ${ctx.app.name}${id.groupsIncomplete ? ' (group list incomplete: overage)' : ''}`],
      publicReason: 'You are not assigned to this app. Ask your administrator for access.',
      signInAgain: true,
    };
  }
}
