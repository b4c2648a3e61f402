export const AUDIT_ACTIONS = [
  'key.created',
  'key.updated',
  'key.rotated',
  'key.revoked',
  'key.expired',
  'partition.pruned',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export type AuditEntry = {
  id: string;
  orgId: string;
  occurredAt: Date;
  actorType: 'key' | 'operator' | 'system';
  actorKeyId: string | null;
  action: AuditAction;
  targetType: 'api_key' | 'partition';
  targetId: string | null;
  details: Record<string, unknown>;
};
