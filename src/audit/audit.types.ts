export const AUDIT_ACTIONS = [
  'key.created',
  'key.updated',
  'key.rotated',
  'key.revoked',
  'key.expired',
  'key.dormant',
  'partition.pruned',
  'policy.updated',
  'policy.downgraded',
  'webhook.created',
  'webhook.updated',
  'webhook.deleted',
  'webhook.secret_rotated',
  'webhook.resent',
  'webhook.disabled',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export type AuditEntry = {
  id: string;
  orgId: string;
  occurredAt: Date;
  actorType: 'key' | 'operator' | 'system' | 'policy';
  actorKeyId: string | null;
  action: AuditAction;
  targetType: 'api_key' | 'partition' | 'policy' | 'webhook';
  targetId: string | null;
  details: Record<string, unknown>;
};
