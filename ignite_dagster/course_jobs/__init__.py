"""course_jobs"""
