/**
 * Assignment: only the users and groups listed may use the app. Unassigned
 * users get 403 Forbidden, as in Entra. A group list the provider cut short
 * (overage) never satisfies a group rule.
 */
import { PLUGIN_API_VERSION, type Decision, type Plugin, type RequestContext, type Stage } from '../../pipeline/stage.js';

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
    const users = new Set((options.users ?? []).map((u) => u.toLowerCase()));
    // Without case, as policy group conditions and the session's trimmed group list are.
    const groups = new Set((options.groups ?? []).map((g) => g.toLowerCase()));
    if (!users.size && !groups.size) throw new Error('assignment lists no users and no groups: nobody could use the app');
    return new AssignmentStage(users, groups);
  },
};

class AssignmentStage implements Stage {
  readonly name = 'assignment';
  readonly kind = 'access' as const;
  constructor(
    private readonly users: ReadonlySet<string>,
    private readonly groups: ReadonlySet<string>,
  ) {}

  run(ctx: RequestContext): Decision {
    const id = ctx.identity;
    // Fail closed: assignment without a signed-in user is a misbuilt pipeline.
    if (!id) return { kind: 'deny', status: 401, reasons: ['assignment: no identity'] };
    if (this.users.has(id.user.toLowerCase())) return { kind: 'continue', reasons: [`assigned user ${id.user}`] };
    // A trimmed session list still holds every group the config names, so it is trusted; an overage list is not.
    if (!id.groupsIncomplete) for (const g of id.groups) if (this.groups.has(g.toLowerCase())) return { kind: 'continue', reasons: [`assigned group ${g}`] };
    return {
      kind: 'deny',
      status: 403,
      reasons: [`user ${id.user} is not assigned to ${ctx.app.name}${id.groupsIncomplete ? ' (group list incomplete: overage)' : ''}`],
      publicReason: 'You are not assigned to this app. Ask your administrator for access.',
      signInAgain: true,
    };
  }
}
