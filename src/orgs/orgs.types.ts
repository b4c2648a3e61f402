export type Org = { id: string; name: string; createdAt: Date };
