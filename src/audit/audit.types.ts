export const AUDIT_ACTIONS = [
  'key.created',
  'key.updated',
  'key.rotated',
  'key.revoked',
  'key.expired',
  'key.dormant',
  'partition.pruned',
  'policy.updated',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export type AuditEntry = {
  id: string;
  orgId: string;
  occurredAt: Date;
  actorType: 'key' | 'operator' | 'system' | 'policy';
  actorKeyId: string | null;
  action: AuditAction;
  targetType: 'api_key' | 'partition' | 'policy';
  targetId: string | null;
  details: Record<string, unknown>;
};
